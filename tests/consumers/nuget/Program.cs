// A program that knows Loom only as a NuGet package: it trains a small MLP on
// three separable clusters and prints its accuracy.
using Loom;

Rand.Seed(7);
using var scope = NDArray.Scope();
var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { 600 }), DType.Int32).AsType(DType.Float32);
var x = Op.OneHot(labels.AsType(DType.Int64), depth: 4) * 3.0 + Rand.Normal(0, 0.5, new long[] { 600, 4 });
using var train = new NDArrayIter(x, labels, 50, shuffle: true);
using var test = new NDArrayIter(x, labels, 50);

var net = Symbol.Variable("data")
    .FullyConnected("fc1", numHidden: 16).Activation("relu1", ActType.Relu)
    .FullyConnected("fc2", numHidden: 3)
    .SoftmaxOutput("softmax");
Module.Log = _ => { };
using var model = new FeedForward(net, Context.Cpu());
model.Fit(train, new SGD(lr: 0.2, momentum: 0.9), 5, init: new XavierInit());
double accuracy = model.Score(test);
Console.WriteLine($"accuracy={accuracy:F4} (libloom from {NativeLoader.LoadedFrom})");
return accuracy > 0.9 ? 0 : 1;
