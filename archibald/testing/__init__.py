"""An in-memory ArcGIS REST emulator for tests, demos and benchmarks.

```python
from archibald.testing import FakeArcGIS

fake = FakeArcGIS()
fake.add_user("alice", "wonderland")
layer = fake.add_feature_layer("Parcels", count=10_001, max_record_count=1000, secured=True)
```
"""

from ._adaptors import ArcGISTransport as ArcGISTransport
from ._clock import AutojumpEventLoop as AutojumpEventLoop
from ._data import FakeLayer as FakeLayer
from ._data import FakeService as FakeService
from ._emulator import FakeArcGIS as FakeArcGIS
from ._faults import Faults as Faults
from ._generated import GENERATED_FIELDS as GENERATED_FIELDS
from ._generated import generate_features as generate_features
from ._statistics import FakeStatistics as FakeStatistics

__all__ = [
    "GENERATED_FIELDS",
    "ArcGISTransport",
    "AutojumpEventLoop",
    "FakeArcGIS",
    "FakeLayer",
    "FakeService",
    "FakeStatistics",
    "Faults",
    "generate_features",
]
