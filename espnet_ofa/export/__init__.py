"""Exports of OFA SSL models to other toolkits (Hugging Face transformers)."""
