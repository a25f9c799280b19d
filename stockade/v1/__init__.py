"""Generated protobuf and gRPC code for ``proto/stockade/v1`` (do not edit).

Regenerate with ``python -m stockade.wire.gen``; only ``stockade.wire.codec``
and the gRPC servers/clients import these modules.
"""
