"""The ``schedd`` daemon: request validation, gRPC servicers, the node wiring, the leader's
dispatcher, worker stream sessions and the lease table. Private: run it with ``schedd run``.
"""
