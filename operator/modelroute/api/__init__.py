"""The API users write: pydantic models of the ModelRoute (the CRD's single source) and checks."""
