"""Second factors after the login: TOTP (RFC 6238) with recovery codes, configured as Dex main's `mfa`."""
