"""The user model: the stored profile the call path reads (profiles), forwarding rules
(forward_rules), validation of what the API is given (validation), the transactional
write service (provisioning) and the CSV form of users (csvio)."""
