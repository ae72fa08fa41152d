"""``kubectl oneie dashboard``: a local web console that acts with the caller's kubeconfig identity.

Modules: :mod:`security` (per-run token, CSRF, Content-Security-Policy, loopback binding),
:mod:`api` (JSON views and actions, made with the user's identity), :mod:`events` (Server-Sent
Events fed from Kubernetes watches), :mod:`server` (the aiohttp application and the command).
"""
