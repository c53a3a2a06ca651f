"""labkit: the small package behind the LLM Tuning Lab notebooks.

Import the modules you need (`from labkit.measure import measure`); this file stays tiny so
that `import labkit` is instant and pulls in no heavy library.
"""

__version__ = "0.1.0"
