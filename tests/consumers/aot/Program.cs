// A training program published trimmed and as NativeAOT (tests/consumers/aot/run.sh):
// symbols, Module.Fit, checkpoints and the JSON the library reads must all work
// without reflection.
using Loom;

Rand.Seed(11);
var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { 300 }), DType.Int32).AsType(DType.Float32);
var x = Op.OneHot(labels.AsType(DType.Int64), depth: 5) * 3.0 + Rand.Normal(0, 0.5, new long[] { 300, 5 });
var net = Symbol.Variable("data")
    .FullyConnected("fc1", numHidden: 16).Activation("relu1", ActType.Relu)
    .FullyConnected("fc2", numHidden: 3)
    .SoftmaxOutput("softmax");
using var train = new NDArrayIter(x, labels, 20, shuffle: true);
using var test = new NDArrayIter(x, labels, 20);
Module.Log = _ => { };
using var model = new FeedForward(net);
model.Fit(train, new SGD(lr: 0.5, momentum: 0.9), 5, init: new XavierInit());
string prefix = Path.Combine(Path.GetTempPath(), $"loom_aot_{Environment.ProcessId}");
model.Save(prefix, 5);
using var back = FeedForward.Load(prefix, 5);
double acc = back.Score(test);
foreach (var f in Directory.GetFiles(Path.GetTempPath(), $"loom_aot_{Environment.ProcessId}*")) File.Delete(f);
Console.WriteLine($"accuracy={acc:F4} args={string.Join(",", net.ListArguments())}");
return acc > 0.9 ? 0 : 1;
