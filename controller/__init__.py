"""The Stockade controller: the model, the policy engine and the service around it."""
