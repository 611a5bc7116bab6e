"""Remediations, one module per fix family (the `gpudoctor fix` command)."""
