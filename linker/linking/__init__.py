"""Linking in context: what to do with a mention once its candidates are known (composites, ties, NIL)."""
