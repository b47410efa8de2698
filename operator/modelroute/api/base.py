"""What every API model shares: wire naming (camelCase), patterns and constrained types."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
HTTP_HEADER_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
URL_PATTERN = r"^https?://[^\s/?#]+(/[^\s]*)?$"

Port = Annotated[int, Field(ge=1, le=65535)]
DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
ServiceName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_1035_LABEL_PATTERN)]


#: The distinct fields-sets of all models (bounded: subsets of each model's few fields, in
#: the combinations the operator's code and its users' specs produce).
_FIELD_SETS: dict[frozenset[str], set[str]] = {}


class ApiModel(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields ignored.

    Unknown fields are ignored rather than rejected so an older operator keeps working while a
    newer CRD adds fields; the API server's structural schema already prunes unknown input.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        use_enum_values=False,
    )

    def model_post_init(self, context: Any, /) -> None:
        """Share one ``__pydantic_fields_set__`` among instances that set the same fields.

        A set per model instance is 216-728 bytes, about a fifth of a route's spec and status
        (tens of instances each, 10,000 routes). pydantic never changes it in place: copies
        (``model_copy``) copy it first. Only what the fields were set from is shared.
        """
        fields = self.__pydantic_fields_set__
        shared = _FIELD_SETS.setdefault(frozenset(fields), fields)
        if shared is not fields:
            object.__setattr__(self, "__pydantic_fields_set__", shared)

    def to_wire(self) -> dict[str, Any]:
        """Serialize to the camelCase JSON shape the API server stores."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)
