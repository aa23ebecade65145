"""Numbered plain-SQL migrations, shipped inside the wheel and applied by `ledgerd migrate`."""
