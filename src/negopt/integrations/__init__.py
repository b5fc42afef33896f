"""Adapters that put negopt into other tools: :mod:`negopt.integrations.comfyui`, a ComfyUI node pack.

Nothing in negopt imports this package; it imports negopt's public names, the way a user's code would.
"""
