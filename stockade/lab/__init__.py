"""The lab: a real multi-node cluster made of network namespaces on one machine.

``topology`` plans it, ``netns`` builds and removes it, ``cluster`` owns one
run's lifetime, ``podserver`` is each pod's echo server, ``prober`` sends the
real packets, ``pipeline`` runs the emulator, controller and agents inside it,
``runner`` runs policy cases, ``demo`` is ``stockade demo``, ``cleanup`` is
``stockade lab clean``.
"""
