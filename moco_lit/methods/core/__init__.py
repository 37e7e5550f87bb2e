"""The bases that methods build on, one module each: ``module`` (``CollaborationModule``, the base of
every method), ``dev_trained`` (trained on the dev table),
``agent_trained`` (trainable LoRA agents on collaborators, the trained text methods) and
``merge_search`` (one merged model searched under ``fit``, the weight methods)."""
