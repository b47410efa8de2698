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

    def to_wire(self) -> dict[str, Any]:
        """Serialize to the camelCase JSON shape the API server stores."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)
