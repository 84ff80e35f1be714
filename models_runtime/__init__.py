"""Framework-free model runtime for prefloop: text embeddings, embedding caches and a
Bradley–Terry reward model. Nothing here imports Django, and heavy libraries (torch,
transformers) are only imported inside the functions that need them, so importing this
package is cheap."""
