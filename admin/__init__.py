"""Administration without a shell: agents, queues, reason codes, skills and the routing
policy, changed over REST and in the browser, applied on every node at once
(docs/admin.md)."""
