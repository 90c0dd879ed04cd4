"""storycue: match music to the emotion of a story.

The core library. Encoders (``storycue.models``) turn story text and music audio into
points of a shared emotion space; storage (``storycue.storage``) keeps track metadata and
vectors behind small interfaces; the pipeline (``storycue.pipeline``) ingests catalogues
and builds cue sheets. Services and the CLI are thin adapters over this package.
"""

__version__ = "0.1.0"
