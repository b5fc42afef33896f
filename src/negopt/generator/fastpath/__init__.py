"""The fast path that :meth:`NegOptGenerator.optimize <negopt.NegOptGenerator.optimize>` installs.

``prepare`` checks ``optimize``'s arguments, casts or quantizes the model and picks a decoder; ``greedy`` is negopt's
greedy decode loop over a static KV cache (``generate``'s output, token for token, in float32); ``ctranslate2`` runs
the same calls in CTranslate2.
"""
