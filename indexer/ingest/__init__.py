"""Ingestion: prepare videos (probe, hash, windows), encode their clips, commit them (threads or Ray)."""
