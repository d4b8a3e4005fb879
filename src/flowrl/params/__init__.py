"""The configuration: params.yaml read (reader), its sections (sections) and the whole typed model with profiles
applied (model)."""
