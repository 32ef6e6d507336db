"""Search: two-stage candidate + exact partial-alignment rerank, and per-match explanations."""
