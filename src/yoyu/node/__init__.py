"""Workers of a llama.cpp RPC cluster (``yoyu node``) and the head's view of them.

``worker``: rpc-server + guard + status endpoint on each worker machine.
``status``: what a worker reports, and the machine description the head plans with.
``client``: the head reading its workers.
"""
