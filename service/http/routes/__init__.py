"""HTTP routes: one module per endpoint group. They parse, call the data plane, and return."""
