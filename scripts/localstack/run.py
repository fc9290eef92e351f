"""
Starts LocalStack's runtime as `python -m localstack.runtime.main` does, with a deeper listen
backlog for its HTTP server (scripts/localstack.ts runs this with GATEWAY_SERVER=hypercorn).

Why: LocalStack serves S3 and DynamoDB on one port, so a burst of new connections from both SDK
clients (up to 50 sockets each) meets one accept queue. Hypercorn's default backlog of 100
overflows under such a burst; a dropped SYN is retried by the kernel only after 1 s, which is the
service's SDK connection timeout, so the request fails instead of waiting. (moto and DynamoDB Local
listen on separate ports and never hit this.)
"""

import runpy

from hypercorn.config import Config

Config.backlog = 2048

runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
