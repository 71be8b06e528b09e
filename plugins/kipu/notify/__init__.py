"""Team notifications: events (``events``), channels (``channels``), digests and deliveries with retries
(``dispatch``), signed outgoing webhooks (``signing``) and the Airflow notifier that fires from task callbacks."""
