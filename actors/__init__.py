"""Live state as pykka actors hosted on the Tornado IOLoop.

One ``TenantActor`` per tenant (connections and presence), one ``ConversationActor``
per active conversation (membership, joined sockets, typing, ordered delivery).
``runtime`` adapts pykka to the loop; ``directory`` spawns and retires actors.
"""
