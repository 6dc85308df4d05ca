"""Security: the development CA (pki), TLS material and its rotation (tls), and who may call
what (roles). docs/security.md has the model."""
