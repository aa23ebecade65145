"""The customer's field types with their limits (Stripe's), written once.

The request types (service/wire.py) and the response types (projections/objects.py) are built from these
`Annotated` types, so the OpenAPI document states these limits; `domain.validation` takes its checks from
the same types (`max_length`, `choices`), so what the document states is exactly where a command is
refused. The value objects that events embed (domain/values.py) stay plain: history keeps its meaning
whatever a later limit says.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, get_args

from msgspec import Meta

NO_NUL: Final[str] = "^[^\\x00]*$"  # the service rejects NUL characters everywhere

Text5000 = Annotated[str, Meta(max_length=5000, pattern=NO_NUL)]
AddressText = Annotated[str, Meta(max_length=5000, pattern=NO_NUL)]
Email = Annotated[str, Meta(max_length=512, pattern=NO_NUL)]
Name = Annotated[str, Meta(max_length=256, pattern=NO_NUL)]
Phone = Annotated[str, Meta(max_length=20, pattern=NO_NUL)]
Description = Annotated[str, Meta(max_length=5000, pattern=NO_NUL)]
BusinessName = Annotated[str, Meta(max_length=150, pattern=NO_NUL)]
IndividualName = Annotated[str, Meta(max_length=150, pattern=NO_NUL)]
ExternalId = Annotated[str, Meta(max_length=255, pattern=NO_NUL)]
TransactionDescription = Annotated[str, Meta(max_length=350, pattern=NO_NUL)]
CustomFieldName = Annotated[str, Meta(max_length=40, pattern=NO_NUL)]
CustomFieldValue = Annotated[str, Meta(max_length=140, pattern=NO_NUL)]

METADATA_MAX_KEYS: Final[int] = 50
MetadataKey = Annotated[str, Meta(min_length=1, max_length=40, pattern="^[^\\[\\]\\x00]*$")]
MetadataValue = Annotated[str, Meta(max_length=500, pattern=NO_NUL)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Meta(max_length=METADATA_MAX_KEYS, description=f"Up to {METADATA_MAX_KEYS} string pairs."),
]

LOCALE: Final = re.compile(r"[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*")
Locale = Annotated[str, Meta(pattern=f"^{LOCALE.pattern}$")]
MAX_LOCALES: Final[int] = 20
INVOICE_PREFIX: Final = re.compile(r"[A-Z0-9]{1,12}")
InvoicePrefix = Annotated[str, Meta(pattern=f"^{INVOICE_PREFIX.pattern}$")]
MIN_INVOICE_SEQUENCE: Final[int] = 1
MAX_INVOICE_SEQUENCE: Final[int] = 10**9
InvoiceSequence = Annotated[int, Meta(ge=MIN_INVOICE_SEQUENCE, le=MAX_INVOICE_SEQUENCE)]
MAX_CUSTOM_FIELDS: Final[int] = 4
TaxExempt = Literal["none", "exempt", "reverse"]  # (in the order error messages list them)
AmountTaxDisplay = Literal["exclude_tax", "include_inclusive_tax"]

# The customer's strings, by profile field (domain.validation checks each against its type's length).
PROFILE_TEXT: Final[dict[str, Any]] = {
    "email": Email,
    "name": Name,
    "phone": Phone,
    "description": Description,
    "business_name": BusinessName,
    "individual_name": IndividualName,
    "external_id": ExternalId,
}


def max_length(tp: Any) -> int:
    """The `max_length` an Annotated type declares."""
    for meta in get_args(tp)[1:]:
        if isinstance(meta, Meta) and meta.max_length is not None:
            return meta.max_length
    raise TypeError(f"{tp!r} declares no max_length")


def choices(tp: Any) -> tuple[str, ...]:
    """The values a Literal type allows, in its order."""
    return tuple(get_args(tp))
