"""Graph passes: soft masks (mask), the physical rewrite (rewrite), verification (verify)."""
