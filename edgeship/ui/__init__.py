"""Terminal output: progress and width-aware tables (rich). Imports nothing of edgeship."""
