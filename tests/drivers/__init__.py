"""The routing-driver contract shared by the FakeKube and the real-API-server test runs."""
