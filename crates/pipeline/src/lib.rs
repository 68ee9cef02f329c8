//! What the bridge's workers share: subjects, messages, configuration, topology and shutdown.
