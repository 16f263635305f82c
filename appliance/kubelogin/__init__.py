"""`portico kubectl-login`: a kubectl exec credential plugin that logs in to Portico (or any OIDC issuer)."""
