"""Plans, their limits and usage (``plans``), and Stripe billing (``stripe_billing``): checkout, the customer portal,
and webhooks applied once and in order."""
