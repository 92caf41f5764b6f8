"""Option values shared by the plan and the command line (no imports: the CLI parser reads them
without loading torch)."""

ATTENTION = ("heads", "head_dims", "both")
LAYER_NORM = ("exact", "native")
SCOPES = ("local", "global")
