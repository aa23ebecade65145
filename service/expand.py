"""`expand[]`: which paths each response can expand, and the expansion itself.

What can be expanded is declared once per object (`Node` trees below): a customer's
`invoice_credit_balance`, `tax`, `tax_ids`, `sources`, `subscriptions` (and the always-null
`default_source`, `test_clock`, `invoice_settings.default_payment_method`); a balance transaction's
`customer` (itself a customer, so `customer.tax` works) and its always-null `invoice`, `credit_note`,
`checkout_session`; a list's or search result's `data.<field>` and `total_count`. Any other path is
Stripe's 400 "This property cannot be expanded (path)." naming `expand`; more than four levels is
`property_expansion_max_depth`. Paths are checked before a command runs, so a bad one writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ledgerd.domain.errors import InvalidParameter

MAX_DEPTH: Final[int] = 4


@dataclass(frozen=True)
class Node:
    """A property of a response: whether `expand` may name it, and what lies below it."""

    expandable: bool = True
    children: Mapping[str, Node] = field(default_factory=dict)


LEAF: Final = Node()
CUSTOMER: Final = Node(
    expandable=False,
    children={
        "invoice_credit_balance": LEAF,
        "tax": LEAF,
        "tax_ids": LEAF,
        "sources": LEAF,
        "subscriptions": LEAF,
        "default_source": LEAF,
        "test_clock": LEAF,
        "invoice_settings": Node(expandable=False, children={"default_payment_method": LEAF}),
    },
)
BALANCE_TRANSACTION: Final = Node(
    expandable=False,
    children={
        "customer": Node(children=CUSTOMER.children),
        "invoice": LEAF,
        "credit_note": LEAF,
        "checkout_session": LEAF,
    },
)
NOTHING: Final = Node(expandable=False)  # events, history, a deleted customer's stub


def list_of(item: Node) -> Node:
    return Node(
        expandable=False,
        children={"data": Node(expandable=False, children=item.children), "total_count": LEAF},
    )


CUSTOMER_LIST: Final = list_of(CUSTOMER)
BALANCE_TRANSACTION_LIST: Final = list_of(BALANCE_TRANSACTION)
EVENT_LIST: Final = Node(expandable=False, children={"data": NOTHING})

Tree = dict[str, "Tree"]  # the requested paths, as a tree of property names


def parse(paths: tuple[str, ...], root: Node) -> Tree:
    """The requested paths as a tree, or InvalidParameter(param="expand") for one `root` cannot expand."""
    tree: Tree = {}
    for path in paths:
        segments = path.split(".")
        if len(segments) > MAX_DEPTH:
            raise InvalidParameter(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                param="expand",
                code="property_expansion_max_depth",
            )
        node, branch = root, tree
        for index, segment in enumerate(segments):
            child = node.children.get(segment)
            last = index == len(segments) - 1
            if child is None or (last and not child.expandable):
                raise cannot_expand(path, ".".join(segments[: index + 1]), root)
            node, branch = child, branch.setdefault(segment, {})
    return tree


def cannot_expand(path: str, shown: str, root: Node) -> InvalidParameter:
    message = f"This property cannot be expanded ({shown})."
    data = root.children.get("data")
    if data is not None and path.split(".")[0] in data.children:
        message += f" You may want to try expanding 'data.{path}' instead."
    return InvalidParameter(message, param="expand")


# ---------------------------------------------------------------------------------------------------
# applying a tree to a rendered response
# ---------------------------------------------------------------------------------------------------

# A customer object and its balance in every currency (the `balances` of its projection row).
CustomerLoader = Callable[[str], Awaitable[tuple[dict[str, Any], Mapping[str, int]] | None]]


def invoice_credit_balance(balances: Mapping[str, int]) -> dict[str, int]:
    """Stripe's map currency -> credit, every currency the customer has a ledger in; positive = credit,
    the opposite sign of `balance`."""
    return {currency: -amount for currency, amount in balances.items()}


def tax(customer: Mapping[str, Any]) -> dict[str, Any]:
    """No tax location is known: no address is geocoded and no IP address is accepted."""
    return {
        "automatic_tax": "unrecognized_location",
        "ip_address": None,
        "location": None,
        "provider": "stripe",
    }


def empty_list(customer: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [],
        "has_more": False,
        "total_count": 0,
        "url": f"/v1/customers/{customer['id']}/{name}",
    }


def expand_customer(customer: dict[str, Any], tree: Tree, balances: Mapping[str, int]) -> dict[str, Any]:
    if customer.get("deleted") is True or not tree:
        return customer
    expanded = dict(customer)
    if "invoice_credit_balance" in tree:
        expanded["invoice_credit_balance"] = invoice_credit_balance(balances)
    if "tax" in tree:
        expanded["tax"] = tax(customer)
    for name in ("tax_ids", "sources", "subscriptions"):
        if name in tree:
            expanded[name] = empty_list(customer, name)
    return expanded  # default_source, test_clock, invoice_settings.default_payment_method stay null


async def expand_transaction(
    transaction: dict[str, Any], tree: Tree, load_customer: CustomerLoader
) -> dict[str, Any]:
    if "customer" not in tree or not isinstance(transaction.get("customer"), str):
        return transaction
    loaded = await load_customer(transaction["customer"])
    if loaded is None:
        return transaction
    customer, balances = loaded
    return dict(transaction, customer=expand_customer(customer, tree["customer"], balances))


def expandable_paths(root: Node, prefix: str = "", depth: int = MAX_DEPTH) -> list[str]:
    """Every path `root` can expand (for the OpenAPI document)."""
    found: list[str] = []
    if depth == 0:
        return found
    for name, child in root.children.items():
        path = f"{prefix}{name}"
        if child.expandable:
            found.append(path)
        found.extend(expandable_paths(child, f"{path}.", depth - 1))
    return found
