"""The embedded tiny world, the default profile's offline stand-in for a real LM and benchmark.

``world`` generates its questions (aleatoric and epistemic uncertainty known by construction),
``model`` its tokenizer and Mistral-architecture model, ``base`` pre-trains that model into
``data/base``. Nothing on the real path (a hub or GGUF base, ``lorauq.model``) imports this
package except where ``base.kind: tiny`` or ``source: synthetic`` asks for it.
"""

__all__: list[str] = []
