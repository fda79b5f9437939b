"""The ways in besides Python: the chat web UI (ui/app.py over ui/handlers.py), the OpenAI-compatible API
(ui/api.py, `rag serve`) and the MCP server (ui/mcp_server.py, `rag mcp`), each a thin layer over `rag`.

Importing this package imports nothing heavy; each command imports its module (Gradio, FastAPI, mcp) when it starts.
"""
