"""The chat web UI: a thin Gradio layer over `rag` (handlers in ui/handlers.py, the page in ui/app.py).

Importing this package imports nothing heavy; `rag ui` imports ui.app (and Gradio) only when it starts the page.
"""
