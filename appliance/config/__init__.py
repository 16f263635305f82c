"""Configuration: schema, loading, validation, Dex compatibility."""
