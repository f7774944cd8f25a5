# Imported by every Python process of our Tempest run (it is on PYTHONPATH).
# Debian's tempest 33 makes SubnetsClient.delete_subnet() wait ten seconds
# unconditionally, for deployments whose ports are torn down asynchronously.
# Neutrino deletes synchronously, so with NEUTRINO_TEMPEST_FAST_SUBNET_DELETE=1
# that one module gets a time object whose sleep returns at once.
import os

if os.environ.get("NEUTRINO_TEMPEST_FAST_SUBNET_DELETE") == "1":
    try:
        import time as real_time
        from tempest.lib.services.network import subnets_client

        class FastTime:
            def __getattr__(self, attr):
                return getattr(real_time, attr)

            def sleep(self, seconds):
                pass

        subnets_client.time = FastTime()
    except ImportError:
        pass
