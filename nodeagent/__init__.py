"""The Stockade node agent: applies a node's desired state to the kernel."""
