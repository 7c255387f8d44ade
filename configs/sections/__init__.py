"""Config section builders shared by the runnable configs (one module per section).

A runnable config (configs/*.py with get_config) builds its sections here and
changes only its own numbers, so a paper config never inherits a demo's
settings by importing the demo. Each builder returns the thesis's settings where
the thesis gives them; demos override them in their own files.
"""
