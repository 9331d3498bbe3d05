"""The admin's front door: lockout after failed logins (django-axes), TOTP two-factor login for
staff (django-otp), and the admin's response headers (CSP, framing)."""
