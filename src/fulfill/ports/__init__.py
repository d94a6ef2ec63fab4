"""The ports of the core: what the engine and the use cases need from the outside, as Protocols.

Ports import only ``fulfill.domain``; adapters (``fulfill.store``, test doubles) implement them.
"""
