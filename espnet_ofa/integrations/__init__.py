"""Registrations of OFA models in other toolkits (s3prl)."""
