"""Event stores: the PostgreSQL one the service runs on and an in-memory one for fast tests.
Both pass the same contract suite (tests/integration/test_store_contract.py)."""
