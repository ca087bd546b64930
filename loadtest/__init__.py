"""Holiday-scale load tests through the shadow proxy.

`shapes` states the load profiles in webhooks per second. `locustfile`
sends signed order webhooks with Locust; run it only as a `locust` process.
`run` starts the sandbox, the proxy and Locust, and waits for the flows.
`phases` computes the figures per load phase from the ledger, and `report`
and `chart` write them out. `cutover loadtest` ties these together.
"""
