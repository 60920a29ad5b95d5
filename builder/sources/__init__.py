"""Remote sources of ADD: http(s) downloads and git checkouts.

``urls`` reads a source word (which words are URLs or git references, and
what they ask for) and imports nothing beyond the standard library, so the
planner can use it; ``http`` and ``git`` do the network work at build time.
"""
