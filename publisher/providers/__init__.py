"""Mail providers reached through their HTTP API (SendGrid, Mailgun, Postmark, SES, and any plugin).

Each module here declares one provider as `KIND = ProviderKind(...)`: its `kind:` name in config.yaml,
its settings model, and how to build its transport, its webhook routes and its `publisher check
--transport` probe. The config's transport union, build_transport, the probes, the webhook routing and
the SPF hint are all built from publisher.providers.registry, so adding a provider is one declaration
module (plus the transport and webhook code it points to) and its tests; a package of its own does the
same through the `publisher.mail_providers` entry point group.
"""
