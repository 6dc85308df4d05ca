"""The SDK's core, shared by the sync and asyncio clients: calls, paging, retries, leader
following (:mod:`schedd.sdk.core`, :mod:`schedd.sdk.endpoints`). Private: users import
:mod:`schedd.client` and :mod:`schedd.aio`.
"""
